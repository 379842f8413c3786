"""Importing labelled photos taken elsewhere into the dataset."""
