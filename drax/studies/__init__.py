"""The paper's studies over trained models: decoding tables (stage 11), training studies (stage 12),
systems compared for accuracy and speed (stage 13), the RTFx protocol, and RESULTS.md (stage 10)."""
