// goverify: what Go's crypto/x509 says about a chain (21-scope-peers.sh).
// Only the standard library; built at test time, no network.
//
//	goverify ROOTS.pem CHAIN.pem [DNSNAME]
//
// Exit 0 "ok", 1 "fail: <reason>" (the chain does not verify), 2 when a
// certificate cannot even be parsed (e.g. an OID arc over 31 bits).
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func load(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return out, nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: goverify ROOTS.pem CHAIN.pem [DNSNAME]")
		os.Exit(2)
	}
	roots, err := load(os.Args[1])
	if err != nil {
		fmt.Println("parse:", err)
		os.Exit(2)
	}
	chain, err := load(os.Args[2])
	if err != nil {
		fmt.Println("parse:", err)
		os.Exit(2)
	}
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if len(os.Args) > 3 {
		opts.DNSName = os.Args[3]
	}
	if _, err := chain[0].Verify(opts); err != nil {
		fmt.Println("fail:", err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
