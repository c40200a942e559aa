"""Neural networks: the DiT decoder, the p_mid network and audio front-ends/encoders."""
