# The one Mailfold image compose.yaml runs: `mailfold init`, the service and the consumers.
# Mailfold goes in as its wheel (never editable), its dependencies from requirements.lock
# (hash-checked) in a layer of their own, so a code change rebuilds only the last layers.

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE schema.sql queries.sql ./
COPY queries/ queries/
COPY migrations/ migrations/
COPY schemas/ schemas/
COPY service/ service/
COPY consumers/ consumers/
COPY mailfold/ mailfold/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /home/mailfold --create-home mailfold
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes \
        -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /tmp/dist/*.whl \
    && rm -r /tmp/dist
USER mailfold
WORKDIR /home/mailfold
ENV MAILFOLD_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8000
# The service's liveness; compose.yaml gives the consumers their own (their /readyz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 CMD \
    ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MAILFOLD_PORT', '8000'), timeout=2)"]
CMD ["mailfold", "serve"]
