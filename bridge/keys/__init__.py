"""Key material, pure: signing keys (JWT, SAML) and their rotation schedule, sealing for what Redis keeps."""
