"""Across episodes: a show's seasons rolled up per person, unknown people linked between episodes."""
