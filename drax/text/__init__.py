"""Output units: turning transcripts into token strings and back."""
