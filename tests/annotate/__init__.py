"""Tests of annotate/."""
