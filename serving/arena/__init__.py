"""The blind A/B arena: battles between two models on one prompt with the same retrieved context
(battles.py), and the ratings computed from their votes (ratings.py: Bradley-Terry with bootstrap intervals,
online Elo).

It owns the arena's rules and maths; the HTTP routes are serving.api.arena, the votes' storage is db.arena.
It never renders UI.
"""
