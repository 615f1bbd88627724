// A JDK TLS client for the peer tests (java Client.java, JDK 17):
//   java Client.java HOST PORT KEYSTORE.p12 PASSWORD CA.pem [PATH]
// Connects with the keystore's key and chain, verifies the server against
// the PEM roots and its name (HTTPS endpoint identification), sends
// "GET PATH" (default /) and prints the answer. Exit 1 on any failure.
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.security.*;
import java.security.cert.*;
import javax.net.ssl.*;

public class Client {
    public static void main(String[] a) throws Exception {
        char[] pw = a[3].toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(a[2])) { ks.load(in, pw); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("PKIX");
        kmf.init(ks, pw);
        KeyStore ts = KeyStore.getInstance("PKCS12");
        ts.load(null, null);
        int i = 0;
        try (InputStream in = new FileInputStream(a[4])) {
            for (java.security.cert.Certificate c :
                 CertificateFactory.getInstance("X.509").generateCertificates(in))
                ts.setCertificateEntry("ca" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLSv1.3");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(a[0],
                Integer.parseInt(a[1]))) {
            SSLParameters p = s.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(p);
            s.setSoTimeout(10000);
            s.startHandshake();
            OutputStream out = s.getOutputStream();
            String path = a.length > 5 ? a[5] : "/";
            out.write(("GET " + path + " HTTP/1.1\r\nHost: " + a[0] + "\r\nConnection: close\r\n\r\n")
                .getBytes(StandardCharsets.ISO_8859_1));
            out.flush();
            byte[] b = s.getInputStream().readAllBytes();
            System.out.write(b);
            System.out.flush();
            if (b.length == 0) System.exit(1);
        } catch (IOException e) {
            System.err.println("client: " + e);
            System.exit(1);
        }
    }
}
