"""Catalogs: a user's own images plus optional metadata, shared by the Fashion and Product search tabs.

A catalog is read from a source (a folder, a CSV with an image column, the Kaggle "Fashion Product Images"
layout, or a ``.zip`` of any of these), validated so every refusal is one sentence a person can act on, and
then built once into every artifact both tabs need.
"""
