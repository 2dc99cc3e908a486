"""Running the agent: the multi-turn loop (agent), exact chat tokens and masks (chat, tokens),
chat-template checks (templates), tool-call parsing (toolcalls) and the prompts (prompts)."""
