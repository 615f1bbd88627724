// gopeer: Go crypto/tls peers for the interop tests (stdlib only).
//
//	gopeer server -listen 127.0.0.1:P -cert F -key F -ca F [-mode require|none] [-seconds N]
//	    TLS 1.3 minimum; require: ClientAuth RequireAndVerifyClientCert
//	    against -ca. Each connection: reads up to an empty line, answers
//	    "HTTP/1.1 200" with "hello from go" and the client's URI SAN.
//	    -reload: -cert, -key and -ca are read again at each connection
//	    (a bundle or certificate an agent rewrote is used at once).
//	gopeer client -connect 127.0.0.1:P -name N -cert F -key F -ca F [-path /P]
//	    one GET of -path (default /) with a client certificate; prints the
//	    answer; exit 1 on any error (the error on stderr).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func pool(path string) *x509.CertPool {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		fmt.Fprintln(os.Stderr, "no certificates in", path)
		os.Exit(2)
	}
	return p
}

func pair(cert, key string) tls.Certificate {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return c
}

func serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t := c.(*tls.Conn)
	if err := t.Handshake(); err != nil {
		fmt.Println("refused:", err)
		return
	}
	who := "none"
	if st := t.ConnectionState(); len(st.PeerCertificates) > 0 {
		who = st.PeerCertificates[0].Subject.String()
		if u := st.PeerCertificates[0].URIs; len(u) > 0 {
			who = u[0].String()
		}
	}
	r := bufio.NewReader(t)
	for n := 0; n < 100; n++ {
		l, err := r.ReadString('\n')
		if err != nil || strings.TrimRight(l, "\r\n") == "" {
			break
		}
	}
	body := "hello from go, client " + who + "\n"
	fmt.Fprintf(t, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	fmt.Println("served", who)
}

func server(args []string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "")
	cert := fs.String("cert", "", "")
	key := fs.String("key", "", "")
	ca := fs.String("ca", "", "")
	mode := fs.String("mode", "require", "")
	secs := fs.Int("seconds", 60, "")
	reload := fs.Bool("reload", false, "")
	fs.Parse(args)
	mk := func(c tls.Certificate) *tls.Config {
		cfg := &tls.Config{
			Certificates: []tls.Certificate{c},
			MinVersion:   tls.VersionTLS13,
		}
		if *mode == "require" {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
			cfg.ClientCAs = pool(*ca)
		}
		return cfg
	}
	cfg := mk(pair(*cert, *key))
	if *reload {
		// the agent renames the key, then the certificate: a read
		// between the two finds a pair that does not match; read again
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			var err error
			for i := 0; i < 20; i++ {
				var c tls.Certificate
				if c, err = tls.LoadX509KeyPair(*cert, *key); err == nil {
					return mk(c), nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			return nil, err
		}
	}
	ln, err := tls.Listen("tcp", *listen, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("listening")
	go func() {
		time.Sleep(time.Duration(*secs) * time.Second)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	connect := fs.String("connect", "", "")
	name := fs.String("name", "localhost", "")
	cert := fs.String("cert", "", "")
	key := fs.String("key", "", "")
	ca := fs.String("ca", "", "")
	path := fs.String("path", "/", "")
	fs.Parse(args)
	cfg := &tls.Config{RootCAs: pool(*ca), ServerName: *name, MinVersion: tls.VersionTLS12}
	if *cert != "" {
		cfg.Certificates = []tls.Certificate{pair(*cert, *key)}
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", *connect, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", *path, *name)
	b, err := io.ReadAll(c)
	os.Stdout.Write(b)
	if err != nil || len(b) == 0 {
		fmt.Fprintln(os.Stderr, "client: read:", err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gopeer server|client ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "usage: gopeer server|client ...")
		os.Exit(2)
	}
}
