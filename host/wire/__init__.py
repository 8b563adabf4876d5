"""One worker's pipes: the channel around the conversation's state machine
(`protocol.conversation`), its writes (request writer) and whose turn it is
to read (leadership), the reply reader, pending calls, the event loops that
watch the pipes.
"""
