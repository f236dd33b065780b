"""Everything AWS: ARNs, limits, minting, STS, output formats, the strict validator."""
