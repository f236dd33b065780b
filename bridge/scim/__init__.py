"""SCIM 2.0 service provider (RFC 7643/7644, the subset Okta and Entra ID send): pure parsing, filters and PATCH
(``model``, ``filter``, ``patch``), the provisioning use cases over the store (``service``) and what the rest of the
bridge asks at sign-in and at each use (``directory``). No Flask here (the web layer is bridge/web/scim.py)."""
