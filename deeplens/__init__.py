"""fer-edge on AWS DeepLens hardware (docs/deeplens.md).

Device side (Python 3.6/3.7, standard library + numpy + OpenCV at import; ``awscam``, ``mo`` and
``greengrasssdk`` only inside the adapters): ``device`` (loads ``awscam``/``mo``), ``awscam_source``
(frames from ``awscam.getLastFrame``), ``awscam_backend`` (``AwscamBackend``: ``mo.optimize`` +
``awscam.Model``), ``greengrass_publisher`` (``GreengrassPublisher``), ``stream`` (the project-stream
FIFO), ``lambda_agent`` + ``lambda_function`` (the Greengrass Lambda), ``__main__`` (the agent
without the DeepLens service: ``python3 -m deeplens``).

Host side: ``bundle`` (the Lambda zip and the model artifact), ``deploy`` (S3 + Lambda with awscli).
"""
