#!/usr/bin/env bash
# nginx-outbound.sh PORT TARGET CERT KEY CA SERVERNAME WORKDIR: the shared
# harness's nginx outbound role (peers/nginx.sh, same settings) as one
# foreground command, so bench/gateway.sh can put the same outbound in
# front of nginx and of the gateway: only the inbound differs.
set -eu
port=$1 target=$2 cert=$3 key=$4 ca=$5 name=$6 d=$7
mkdir -p "$d/tmp"
cat > "$d/nginx-out.conf" <<NGX
worker_processes 1;
daemon off;
pid $d/nginx-out.pid;
error_log $d/nginx-out-error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http {
    access_log off;
    client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
    uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
    keepalive_requests 10000000; keepalive_timeout 300s; client_header_timeout 300s;
    sendfile on; tcp_nodelay on;
    upstream mesh { server $target; keepalive 256; keepalive_requests 10000000; keepalive_timeout 300s; }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
            proxy_pass https://mesh; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_buffering off;
            proxy_ssl_certificate $cert; proxy_ssl_certificate_key $key;
            proxy_ssl_trusted_certificate $ca; proxy_ssl_verify on; proxy_ssl_verify_depth 2;
            proxy_ssl_name $name; proxy_ssl_server_name on;
            proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on;
        }
    }
}
NGX
exec nginx -c "$d/nginx-out.conf"
