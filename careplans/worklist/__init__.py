"""Case management worklists: rules as data, set-based builds producing FHIR Tasks, the Task
state machine, the event outbox, views and quality indicators (README.md here)."""
