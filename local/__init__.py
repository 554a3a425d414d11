"""The local runtime behind ``make run``.

One process runs everything a deployed stack runs: an embedded moto endpoint (DynamoDB, SQS,
S3), the Chalice app served over HTTP, queue consumers that feed the real ``on_sqs_message``
handlers with Lambda-shaped events, and the ``schedule`` handlers fired on their rate/cron.
``local.runtime.LocalRuntime`` composes the parts; ``local.run`` is the command line.
"""
