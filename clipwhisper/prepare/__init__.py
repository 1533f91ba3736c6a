"""`clipwhisper prepare`: face and mouth crops and manifests from raw videos."""
