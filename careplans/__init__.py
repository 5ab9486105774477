"""Proactive care: risk stratification, anticipatory care plans, worklists, indicators.

`careplans.risk`: an eFI-style frailty index (not the licensed eFI) and admission-risk
flags, stored as RiskAssessments (careplans/risk/README.md); `python -m careplans stratify`.
"""
