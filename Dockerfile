# oauthproxy in a container: the same install steps as the README's quick start.
#   docker build -t oauthproxy .
#   docker run -d -p 80:8080 -p 443:8443 -p 127.0.0.1:9000:9000 -v oauthproxy-data:/data oauthproxy
FROM debian:12-slim

WORKDIR /opt/oauthproxy
COPY . .
# quickstart.sh installs the Debian packages and the virtualenv, then stops before starting.
RUN rm -rf .venv oauthproxy-data .env \
    && QUICKSTART_INSTALL_ONLY=1 ./quickstart.sh run \
    && rm -rf /var/lib/apt/lists/* /root/.cache \
    && useradd --system --home-dir /data oauthproxy \
    && install -d -o oauthproxy -g oauthproxy -m 700 /data

USER oauthproxy
VOLUME /data
EXPOSE 8080 8443 9000
# The admin API listens on all interfaces inside the container: publish it on the host's
# loopback only (-p 127.0.0.1:9000:9000).
ENV OAUTHPROXY_HTTP=tcp:8080 \
    OAUTHPROXY_HTTPS=tcp:8443 \
    OAUTHPROXY_API=tcp:9000 \
    OAUTHPROXY_DATA_DIR=/data
ENTRYPOINT ["/opt/oauthproxy/.venv/bin/twistd", "--nodaemon", "--pidfile=", "oauthproxy"]
