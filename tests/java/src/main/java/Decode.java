import com.callstream.telephony.MissedCall;
import com.callstream.telephony.PartyEvent;
import com.callstream.telephony.RecordedCall;
import com.callstream.telephony.Transfer;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.apache.avro.specific.SpecificRecordBase;

/**
 * Reads lines of {@code <topic>\t<hex of a record value>} (Avro single-object encoding, as
 * callstream publishes without a schema registry) from the file that {@code CALLSTREAM_RECORDS}
 * names, decodes each with the class generated for its topic's schema, and writes
 * {@code <topic>\t<hex of the value encoded again>\t<record_id>} to the file that
 * {@code CALLSTREAM_DECODED} names. The decoder checks the schema fingerprint; encoding again gives
 * the same bytes only if every field was read as written.
 */
public class Decode {
  public static void main(String[] args) throws Exception {
    // Avro 1.11.4 and later decode specific records only of packages trusted so
    // (-Dorg.apache.avro.SERIALIZABLE_PACKAGES), as any consumer of these classes must say.
    System.setProperty("org.apache.avro.SERIALIZABLE_PACKAGES", "com.callstream.telephony");
    HexFormat hex = HexFormat.of();
    List<String> out = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of(System.getenv("CALLSTREAM_RECORDS")))) {
      String[] parts = line.split("\t");
      ByteBuffer value = ByteBuffer.wrap(hex.parseHex(parts[1]));
      SpecificRecordBase record;
      ByteBuffer again;
      switch (parts[0]) {
        case "parties" -> {
          PartyEvent r = PartyEvent.fromByteBuffer(value);
          record = r;
          again = r.toByteBuffer();
        }
        case "missed" -> {
          MissedCall r = MissedCall.fromByteBuffer(value);
          record = r;
          again = r.toByteBuffer();
        }
        case "recorded" -> {
          RecordedCall r = RecordedCall.fromByteBuffer(value);
          record = r;
          again = r.toByteBuffer();
        }
        case "transfers" -> {
          Transfer r = Transfer.fromByteBuffer(value);
          record = r;
          again = r.toByteBuffer();
        }
        default -> throw new IllegalArgumentException("unknown topic " + parts[0]);
      }
      byte[] bytes = new byte[again.remaining()];
      again.get(bytes);
      out.add(parts[0] + "\t" + hex.formatHex(bytes) + "\t" + record.get("record_id"));
    }
    Files.write(Path.of(System.getenv("CALLSTREAM_DECODED")), out);
  }
}
