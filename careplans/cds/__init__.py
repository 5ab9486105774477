"""CDS Hooks 2.0 cards from the proactive care record (https://cds-hooks.hl7.org/2.0/)."""
