"""Wire protocols served beside the pages: the IAM Identity Center (SSO) portal API."""
