"""Webhooks: signed HTTP notifications of what happened to an organization's mail.

An organization's endpoints (``endpoints``) subscribe to event types (``events``).
The statement that changes what an event reports also writes one delivery per
subscribed endpoint with its Procrastinate job (a transactional outbox; the
statements are in tasks/queue/procrastinate_boundary.py). The delivery task
(``deliver``) signs each delivery per the Standard Webhooks specification and
sends it to an address checked, then pinned (``safety``). docs/webhooks.md has the
receiving side.
"""
