// A JDK TLS server for the peer tests (java Server.java, JDK 17, no
// dependencies): TLS 1.3 only, its key and chain from a PKCS#12 keystore,
// client certificates verified against PEM roots.
//   java Server.java KEYSTORE.p12 PASSWORD CA.pem SECONDS need:PORT|none:PORT...
// One listener on 127.0.0.1 per need:/none: argument (need: needClientAuth;
// none: never requests a certificate), each in its own thread. Each connection: the handshake, then what the client sent up to an empty
// line (or 4 KiB), then "HTTP/1.1 200" with "hello from java" and the
// client's URI SAN (else its subject); then close() (the JDK sends user_canceled, then
// close_notify). Prints "listening" once all are bound; exits after SECONDS.
import java.io.*;
import java.net.*;
import java.nio.charset.StandardCharsets;
import java.security.*;
import java.security.cert.*;
import javax.net.ssl.*;

public class Server {
    public static void main(String[] a) throws Exception {
        char[] pw = a[1].toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(a[0])) { ks.load(in, pw); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("PKIX");
        kmf.init(ks, pw);
        KeyStore ts = KeyStore.getInstance("PKCS12");
        ts.load(null, null);
        CertificateFactory cf = CertificateFactory.getInstance("X.509");
        int i = 0;
        try (InputStream in = new FileInputStream(a[2])) {
            for (java.security.cert.Certificate c : cf.generateCertificates(in))
                ts.setCertificateEntry("ca" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLSv1.3");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        long end = System.currentTimeMillis() + Long.parseLong(a[3]) * 1000;
        Thread[] t = new Thread[a.length - 4];
        for (i = 4; i < a.length; i++) {
            String[] mp = a[i].split(":");
            SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory()
                .createServerSocket(Integer.parseInt(mp[1]), 16,
                    InetAddress.getByName("127.0.0.1"));
            ss.setEnabledProtocols(new String[] { "TLSv1.3" });
            ss.setNeedClientAuth(mp[0].equals("need"));
            ss.setSoTimeout(500);
            t[i - 4] = new Thread(() -> serve(ss, end));
        }
        for (Thread th : t) th.start();
        System.out.println("listening");
        System.out.flush();
        for (Thread th : t) th.join();
    }

    static void serve(SSLServerSocket ss, long end) {
        while (System.currentTimeMillis() < end) {
            SSLSocket s;
            try { s = (SSLSocket) ss.accept(); } catch (IOException e) { continue; }
            try {
                s.setSoTimeout(5000);
                s.startHandshake();
                String who = "none";
                try {
                    X509Certificate x = (X509Certificate) s.getSession()
                        .getPeerCertificates()[0];
                    who = x.getSubjectX500Principal().getName();
                    if (x.getSubjectAlternativeNames() != null)
                        for (java.util.List<?> n : x.getSubjectAlternativeNames())
                            if ((Integer) n.get(0) == 6) who = (String) n.get(1);
                } catch (SSLPeerUnverifiedException | CertificateParsingException e) { }
                InputStream in = s.getInputStream();
                ByteArrayOutputStream got = new ByteArrayOutputStream();
                int c;
                while (got.size() < 4096 && (c = in.read()) >= 0) {
                    got.write(c);
                    String t = got.toString(StandardCharsets.ISO_8859_1);
                    if (t.endsWith("\r\n\r\n") || t.endsWith("\n\n")) break;
                }
                byte[] body = ("hello from java, client " + who + "\n")
                    .getBytes(StandardCharsets.UTF_8);
                OutputStream out = s.getOutputStream();
                out.write(("HTTP/1.1 200 OK\r\nContent-Length: " + body.length
                    + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.ISO_8859_1));
                out.write(body);
                out.flush();
                System.out.println("served " + who);
            } catch (IOException e) {
                System.out.println("refused: " + e);
            } finally {
                try { s.close(); } catch (IOException e) { }
            }
            System.out.flush();
        }
    }
}
