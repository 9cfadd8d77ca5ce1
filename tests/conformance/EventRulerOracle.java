import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import software.amazon.event.ruler.Machine;

/**
 * The reference for our filter engine: aws/event-ruler, the matcher behind EventBridge content
 * filtering, whose grammar Lambda event filtering uses.
 *
 * Reads one JSON object per line, {"patterns": ["<pattern json>", ...], "event": "<event json>"},
 * and answers one line per request: {"match": true|false}, or {"error": "..."} when a pattern
 * (or the event) is rejected. Every pattern is a rule of one Machine: the answer is whether any
 * rule matches, as with a FilterCriteria's Filters.
 */
public final class EventRulerOracle {
    public static void main(String[] args) throws Exception {
        ObjectMapper json = new ObjectMapper();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, true, "UTF-8");
        String line;
        while ((line = in.readLine()) != null) {
            ObjectNode answer = json.createObjectNode();
            try {
                JsonNode request = json.readTree(line);
                Machine machine = Machine.builder().build();
                int index = 0;
                for (JsonNode pattern : request.get("patterns")) {
                    machine.addRule("filter-" + index++, pattern.asText());
                }
                answer.put("match", !machine.rulesForJSONEvent(request.get("event").asText()).isEmpty());
            } catch (Exception | StackOverflowError exc) {
                answer.put("error", exc.getClass().getSimpleName() + ": " + exc.getMessage());
            }
            out.println(json.writeValueAsString(answer));
        }
    }
}
