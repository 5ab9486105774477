"""Proactive care: risk stratification, anticipatory care plans, worklists, indicators.

Arrives with the proactive-care issues.
"""
