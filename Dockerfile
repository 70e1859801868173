# The Mailfold image compose.yaml runs: the service and both consumers, one command each.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md schema.sql queries.sql ./
COPY queries/ queries/
COPY schemas/ schemas/
COPY service/ service/
COPY consumers/ consumers/
COPY mailfold/ mailfold/
RUN pip install --no-cache-dir -e . && useradd --system mailfold
USER mailfold
ENV MAILFOLD_HOST=0.0.0.0
EXPOSE 8000
CMD ["mailfold", "serve"]
