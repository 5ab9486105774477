"""Booking network services: slots taken atomically, requests, referrals (README)."""
