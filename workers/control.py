"""Control-queue tasks: database work and orchestration that no single hub owns."""

from __future__ import annotations
