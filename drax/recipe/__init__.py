"""Recipes: the numbered stage engine every egs/<corpus>/run.sh drives, and its configuration."""
