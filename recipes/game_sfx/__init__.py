"""Kenney and Sonic Pi game sounds as a folder dataset."""
