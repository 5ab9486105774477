FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY api ./api
COPY fhir ./fhir
COPY consent ./consent
COPY careplans ./careplans
ENV CARENET_HOST=0.0.0.0 CARENET_PORT=8000
EXPOSE 8000
CMD ["uv", "run", "--no-dev", "python", "-m", "api", "serve"]
