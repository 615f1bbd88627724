/*
 * One HTTP(S) request with libcurl, set up one way for every service that
 * makes one (the agent's calls to ca serve, the proxy's CRL and OCSP
 * fetches): a bounded response body, deadlines, no signals, and trust in
 * exactly the certificates given, never the system's store (Debian's
 * libcurl would add /etc/ssl/certs through its default CA path).
 */
#ifndef MTLS_HTTP_CLIENT_H
#define MTLS_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

struct http_client_req {
	const char	*method;	/* "GET" (default when NULL), "POST"... */
	const char	*url;
	const char	*protocols;	/* CURLOPT_PROTOCOLS_STR; NULL "https" */
	const char	*ctype;		/* with <body>: its Content-Type */
	const char	*header;	/* one more request header line
					 * ("Name: value", ours), or NULL */
	const void	*body;		/* NULL: none */
	size_t		 body_len;
	long		 connect_timeout_s;	/* 0: <timeout_s> */
	long		 timeout_s;		/* the whole transfer */
	size_t		 max;		/* the response body, at most */
	/* whom to trust: <ca_pem> (bytes, copied), or the file <ca_file>
	 * (curl reads it), or with <insecure> nobody (no verification: the
	 * agent's bodiless bootstrap GET only); never the system store */
	const uint8_t	*ca_pem;
	size_t		 ca_pem_len;
	const char	*ca_file;
	int		 insecure;
	int		 tls13_only;	/* refuse TLS below 1.3 */
	const char	*cert_file;	/* client certificate and key, or NULL */
	const char	*key_file;
	EVP_PKEY	*key;		/* or the key itself (a token's: it is
					 * set on the SSL_CTX, key_file unused) */
	/* optional hooks, as libcurl's CURLOPT_SSL_CTX_FUNCTION (called with
	 * the SSL_CTX before the handshake) and CURLOPT_HEADERFUNCTION */
	CURLcode	(*ssl_ctx_fn)(CURL *, void *sslctx, void *arg);
	void		*ssl_ctx_arg;
	size_t		(*header_fn)(char *, size_t, size_t, void *arg);
	void		*header_arg;
};

struct http_client_resp {
	long		 status;	/* HTTP status; 0 when no answer */
	char		*body;		/* malloc'd, NUL-terminated, or NULL */
	size_t		 len;		/* without the NUL */
	char		 error[CURL_ERROR_SIZE + 1200];	/* "METHOD URL: why" */
};

/* Makes the request <r>. 0 when an answer arrived (any status: resp->status,
 * resp->body), -1 when none did (connection, TLS, timeout, a body over
 * <max>, no memory), with resp->error naming the method, the URL and
 * libcurl's reason. Free resp->body with free(). */
int	 http_client_do(const struct http_client_req *r,
	    struct http_client_resp *resp);

#endif
