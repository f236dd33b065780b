"""Use cases of the bridge (sign-in, issuing, access requests…): the decision point and what it drives."""
