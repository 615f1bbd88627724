// gobundle: reads a SPIFFE trust bundle (JWK Set) with Go's standard
// library only, as go-spiffe does, and verifies a chain with its roots
// (25-formats.sh). Built at test time, no network.
//
//	gobundle BUNDLE.json CHAIN.pem
//
// Checks each x509-svid key: exactly one x5c certificate, and kty/crv/x/y
// (or n/e) equal to that certificate's public key. Exit 0 "ok N roots",
// 1 "fail: ..." when the chain does not verify, 2 when the bundle is bad.
package main

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
)

type jwk struct {
	Use string   `json:"use"`
	Kty string   `json:"kty"`
	Crv string   `json:"crv"`
	X   string   `json:"x"`
	Y   string   `json:"y"`
	N   string   `json:"n"`
	E   string   `json:"e"`
	X5c []string `json:"x5c"`
}

type bundle struct {
	Keys     []jwk  `json:"keys"`
	Sequence *int64 `json:"spiffe_sequence"`
	Refresh  *int64 `json:"spiffe_refresh_hint"`
}

func die(code int, f string, a ...interface{}) {
	fmt.Printf(f+"\n", a...)
	os.Exit(code)
}

func b64(s string) *big.Int {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		die(2, "bad: base64url member: %v", err)
	}
	return new(big.Int).SetBytes(b)
}

func main() {
	if len(os.Args) != 3 {
		die(2, "usage: gobundle BUNDLE.json CHAIN.pem")
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		die(2, "bad: %v", err)
	}
	var b bundle
	if err := json.Unmarshal(data, &b); err != nil {
		die(2, "bad: %v", err)
	}
	if b.Sequence == nil {
		die(2, "bad: no spiffe_sequence")
	}
	roots := x509.NewCertPool()
	n := 0
	for i, k := range b.Keys {
		if k.Use != "x509-svid" {
			continue
		}
		if len(k.X5c) != 1 {
			die(2, "bad: key %d: %d x5c entries", i, len(k.X5c))
		}
		der, err := base64.StdEncoding.DecodeString(k.X5c[0])
		if err != nil {
			die(2, "bad: key %d: x5c: %v", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			die(2, "bad: key %d: %v", i, err)
		}
		switch pub := c.PublicKey.(type) {
		case *ecdsa.PublicKey:
			if k.Kty != "EC" || k.Crv != pub.Curve.Params().Name ||
				b64(k.X).Cmp(pub.X) != 0 || b64(k.Y).Cmp(pub.Y) != 0 {
				die(2, "bad: key %d: JWK does not match its certificate", i)
			}
			// fixed width: RFC 7518 6.2.1.2
			w := (pub.Curve.Params().BitSize + 7) / 8
			if xb, _ := base64.RawURLEncoding.DecodeString(k.X); len(xb) != w {
				die(2, "bad: key %d: x is %d bytes, want %d", i, len(xb), w)
			}
		case *rsa.PublicKey:
			if k.Kty != "RSA" || b64(k.N).Cmp(pub.N) != 0 ||
				b64(k.E).Int64() != int64(pub.E) {
				die(2, "bad: key %d: JWK does not match its certificate", i)
			}
		default:
			die(2, "bad: key %d: unexpected key type", i)
		}
		roots.AddCert(c)
		n++
	}
	if n == 0 {
		die(2, "bad: no x509-svid key")
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		die(2, "bad: %v", err)
	}
	var chain []*x509.Certificate
	for {
		var blk *pem.Block
		blk, raw = pem.Decode(raw)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			die(2, "bad: chain: %v", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		die(2, "bad: no certificate in %s", os.Args[2])
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		die(1, "fail: %v", err)
	}
	fmt.Printf("ok %d roots\n", n)
}
