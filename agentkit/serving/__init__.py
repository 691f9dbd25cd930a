"""Serving: agentkit as a client of OpenAI-compatible model servers (``ServerLLM``) and as one (``agentkit serve``).

``agentkit.serving.client`` holds ``ServerLLM``; ``agentkit.serving.app`` the FastAPI app behind ``agentkit serve``;
``agentkit.serving.protocol`` the request and response models both share. Importing this package imports neither
FastAPI nor torch.
"""

from agentkit.serving.client import ServerLLM, ServerRefused, UnknownServedModel

__all__ = ["ServerLLM", "ServerRefused", "UnknownServedModel"]
