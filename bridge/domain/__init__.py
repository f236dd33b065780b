"""Value types and the error tree every layer shares: identity values, errors, AWS partitions, the settings base."""
