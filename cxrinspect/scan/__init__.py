"""The dataset scanner: rank images by saliency compactness, localise and verify triggers."""
