"""ESPnet glue: the Drax ASR model class and its registration in ESPnet's ASR task."""
