# `fer-edge serve` in a container: docs/serve.md#the-container. The build context is this folder (.dockerignore).
#   docker build -t fer-edge .                       the HTTP service: slim Python, the inference dependencies only
#   docker build --target ray -t fer-edge-ray .      the same wheel on Ray's image, for a Ray cluster (KubeRay)
# Not built where it was written (that machine has no Docker engine); tests/test_container.py runs its wheel and
# pip lines and its CMD and HEALTHCHECK in a fresh venv instead.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG RAY_IMAGE=rayproject/ray:2.55.1-py311-cpu

# The wheel, from the package sources and the shipped ONNX models (no SavedModel, no OpenVINO files).
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY edge edge
COPY jetson jetson
COPY deeplens deeplens
COPY fer_edge fer_edge
COPY train train
COPY convert convert
COPY models models
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Ray Serve's image with the wheel (deploy/ray/serve.yaml, deploy/kubernetes/rayservice.yaml); runs as Ray's user.
FROM ${RAY_IMAGE} AS ray
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir "$(ls /tmp/wheels/fer_edge-*.whl)[serve,ray]" && rm -rf /tmp/wheels

# The service (the default target): the package's core and its serve extra, no TensorFlow, no training tools.
FROM ${PYTHON_IMAGE} AS serve
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /wheels /wheels
RUN pip install "$(ls /wheels/fer_edge-*.whl)[serve]" && rm -rf /wheels
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fer-edge
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# All of the container's interfaces: an API key is required ($FER_EDGE_API_KEY_FILE naming a mounted secret, or
# $FER_EDGE_API_KEY), or --behind-auth-proxy in the command; with neither it refuses to start and says how.
CMD ["fer-edge", "serve", "--host", "0.0.0.0", "--port", "8000"]
