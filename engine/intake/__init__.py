"""How files become pixels: the image rule, folder scans, browser uploads, mask files, thumbnails."""
