"""Tests of the reference marketplace server over real HTTP (subprocess)."""
