import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * Starts DynamoDB Local bound to one host (127.0.0.1 by default) instead of every interface.
 *
 * DynamoDB Local has no bind-address option: its Jetty server listens on all interfaces. This
 * launcher builds the server exactly as DynamoDBLocal.jar's own main does (same command-line
 * flags), sets the host on its connectors before start, then blocks like the original.
 * Usage: java -Dcdc.bind.host=127.0.0.1 -cp DynamoDBLocal.jar:. LoopbackDynamoDBLocal [flags]
 */
public final class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        String host = System.getProperty("cdc.bind.host", "127.0.0.1");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        for (Connector connector : server.getConnectors()) {
            ((ServerConnector) connector).setHost(host);
        }
        proxy.start();
        proxy.join();
    }
}
