package liftlake.sql;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.parser.ParseException;
import org.apache.spark.sql.catalyst.parser.ParserInterface;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;
import scala.collection.immutable.Seq;
import scala.runtime.AbstractFunction1;
import scala.runtime.AbstractFunction2;
import scala.runtime.BoxedUnit;

/**
 * The SQL parser of `liftlake sql-server`: Spark's (Delta's) parser, with every statement put to a
 * guard before it is parsed. The guard is liftlake's read-only rule (check_spark_query in
 * lib/storage/readonly_sql.py, called back in Python), so the endpoint refuses exactly what
 * `liftlake sql --engine spark` refuses. Until a guard is armed (the server registering the
 * warehouse's tables at start) statements pass.
 */
public final class ReadOnlyParser implements ParserInterface {

    /** Decides a statement: null runs it, anything else is the one-line reason it is refused. */
    public interface Guard {
        String refusal(String sqlText);
    }

    /** Registered as spark.sql.extensions: wraps the parser of every session of the server. */
    public static final class Extension extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
        @Override
        public BoxedUnit apply(SparkSessionExtensions extensions) {
            extensions.injectParser(new AbstractFunction2<SparkSession, ParserInterface, ParserInterface>() {
                @Override
                public ParserInterface apply(SparkSession session, ParserInterface delegate) {
                    return new ReadOnlyParser(delegate);
                }
            });
            return BoxedUnit.UNIT;
        }
    }

    private static volatile Guard guard;

    public static void arm(Guard g) {
        guard = g;
    }

    private final ParserInterface delegate;

    public ReadOnlyParser(ParserInterface delegate) {
        this.delegate = delegate;
    }

    /** The parser underneath: the guard parses with it (the wrapped one would ask the guard again). */
    public ParserInterface delegate() {
        return delegate;
    }

    @Override
    public LogicalPlan parsePlan(String sqlText) throws ParseException {
        Guard g = guard;
        if (g != null) {
            String reason;
            try {
                reason = g.refusal(sqlText);
            } catch (RuntimeException e) { // the guard could not decide: refused, never run unchecked
                reason = "sql: the read-only check failed (" + e.getMessage() + ")";
            }
            if (reason != null) {
                throw new SecurityException(reason);
            }
        }
        return delegate.parsePlan(sqlText);
    }

    @Override
    public LogicalPlan parseQuery(String sqlText) throws ParseException {
        return parsePlan(sqlText);
    }

    @Override
    public Expression parseExpression(String sqlText) throws ParseException {
        return delegate.parseExpression(sqlText);
    }

    @Override
    public TableIdentifier parseTableIdentifier(String sqlText) throws ParseException {
        return delegate.parseTableIdentifier(sqlText);
    }

    @Override
    public FunctionIdentifier parseFunctionIdentifier(String sqlText) throws ParseException {
        return delegate.parseFunctionIdentifier(sqlText);
    }

    @Override
    public Seq<String> parseMultipartIdentifier(String sqlText) throws ParseException {
        return delegate.parseMultipartIdentifier(sqlText);
    }

    @Override
    public StructType parseRoutineParam(String sqlText) throws ParseException {
        return delegate.parseRoutineParam(sqlText);
    }

    @Override
    public StructType parseTableSchema(String sqlText) throws ParseException {
        return delegate.parseTableSchema(sqlText);
    }

    @Override
    public DataType parseDataType(String sqlText) throws ParseException {
        return delegate.parseDataType(sqlText);
    }
}
