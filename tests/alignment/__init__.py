"""Tests of alignment/."""
