# pysaml2 attribute map that keeps attribute names as they are (else "email" becomes an OID).
MAP = {"identifier": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri", "fro": {}, "to": {}}
