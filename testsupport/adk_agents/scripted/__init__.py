"""An ADK agent that needs no model (see agent.py); ``adk api_server`` loads it from this folder."""

from . import agent

__all__ = ["agent"]
