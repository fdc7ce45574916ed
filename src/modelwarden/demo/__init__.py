"""The closed loop as a demonstration: history, live canary, SOP rollback, re-validation, release."""
