"""Bring your own model: a Keras file converted into a trainable .tflite."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["models"])
