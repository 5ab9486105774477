"""Risk stratification: an eFI-style frailty index and admission-risk flags, stored as FHIR
RiskAssessments (shape in assessment.py and README.md beside this file).

evidence.py (what the engine reads), frailty.py and admission.py (the pure rules),
assessment.py (RiskAssessment, narrative, what changed), queries.py (set-based reads of the
search index), flows.py (runs: batches, incremental, writes), models.py (SQLModel tables).
"""
