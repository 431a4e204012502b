"""Masks drawn in the browser: the canvas' Fabric.js objects rasterised at image resolution."""
