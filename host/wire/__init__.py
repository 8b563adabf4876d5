"""One worker's pipes: the channel (who writes, who reads, who is woken) around
the conversation's state machine (`protocol.conversation`), the reply
reader, pending calls, the event loops that watch the pipes.
"""
